"""Stage 2, the Rationales panel: `select` turns word attributions into rationale words, `stats` measures them
(gold overlap, plausibility) as a `RationaleStats` record, `build` runs a teacher over a dataset with a resumable
cache (`build_into_workspace` saves the result as a build of a `kdviz.workspace.Workspace`), `curation` edits a
build on disk and opens or imports builds by name, `export` writes training files and a dataset card."""
