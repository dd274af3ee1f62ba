"""The web app (`valle app`): a Gradio page over the same library functions the CLIs call.

workspace.py  paths typed into the page, confined to one root folder; upload limits
prepare.py    the Data tab: uploads -> corpus folder -> valle.data stages (resumable), reports as tables
long_recordings.py  the Data tab's Long recordings: uploads -> valle.data.segment -> edited table -> corpus
training.py   the Train tab: valle train as a subprocess (stop = SIGINT, resume = --resume true), curves
synthesis.py  the Synthesize tab: checkpoint + text + prompt -> wav and codes; voice presets
ui.py         the page itself (Gradio Blocks); valle/commands/app.py starts it
"""
