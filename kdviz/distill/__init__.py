"""Stage 3, the Train panel: `methods` (what each distillation method trains on), `data` (training examples read
from any kdviz output), `losses` (pure functions), `loop` (the training loop), `metrics` (the rows a run logs),
`runs` (run folders, their status and equivalent commands), `evaluation` (a student's answers, prompted as it was
trained)."""
