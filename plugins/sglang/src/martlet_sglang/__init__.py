"""The SGLang inference backend."""
