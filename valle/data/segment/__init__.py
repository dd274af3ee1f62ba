"""Long recordings -> reviewed utterances: a stage before `scan` (valle segment, the web app's Long recordings).

audio.py   blocks of the file -> silero-vad frame probabilities; one span read back
cuts.py    probabilities -> speech spans cut inside pauses (merged, split, padded)
align.py   known text -> sentences placed on the speech (reports what is missing or extra)
review.py  segments.tsv (edited by the user, never overwritten) and review.html
pipeline.py  the whole run: every recording, transcription, speaker scores, filters, clips, metadata.txt
"""
