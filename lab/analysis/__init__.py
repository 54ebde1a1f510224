"""Analysis of run folders: frames (pandas), verdicts, figures. Reads only a run's files."""
