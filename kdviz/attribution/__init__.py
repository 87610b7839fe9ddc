"""Stage 1, the Teacher panel: which input words a model's answer rests on. `methods` computes token attributions
(one dict of named functions), `targets` decides what is attributed (the predicted choice, the gold answer, a
generation), `words` merges subword tokens into words."""
