"""Stage 4, the Compare panel: `run` puts a teacher and students on the same examples, `stats` holds the pure
statistics (bootstrap intervals, McNemar, attribution agreement), `results` aggregates students by method and
seed, `viz` draws tables and charts, `report` writes report.json, examples.csv and report.html."""
