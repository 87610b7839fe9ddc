"""Stage 4, the Compare panel: `run` puts a teacher and students on the same examples, `records` holds what a
comparison is made of (each model's answers and summary row, the paired tests, the settings), `stats` the pure
statistics (bootstrap intervals, permutation and McNemar tests, attribution agreement), `results` aggregates
students by method and seed, `viz` draws tables and charts, `report` writes and reads report.json, examples.csv and
report.html, with the rule for a workspace's comparison folders and the equivalent `kdviz compare` command."""
