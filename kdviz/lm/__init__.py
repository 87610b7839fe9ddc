"""The model kernel every stage uses: loading (hub, local, GGUF, tiny, embedded), prompt formats, one batched
forward over (prompt, target) pairs, choice scoring and generation."""
