"""Stage 2, the Rationales panel: `select` turns word attributions into rationale words (top-k, mass or z, and the
span they may come from), `stats` measures them (gold overlap, plausibility) as a `RationaleStats` record,
`faithfulness` checks them against the teacher (ERASER comprehensiveness and sufficiency beside random words),
`build` runs a teacher over a dataset with a resumable cache, `workspace_build` saves a build into a workspace,
`curation` edits a build on disk, `export` writes training files and a dataset card."""
