"""Stage 2, the Rationales panel: `select` turns word attributions into rationale words, `stats` measures them
(gold overlap, plausibility), `build` runs a teacher over a dataset with a resumable cache, `curation` edits a
build on disk, `export` writes training files and a dataset card."""
