"""The command-line programs: each module has main(argv) and entry() (bin/*.py and the valle-* console scripts
call entry)."""
