"""Student architectures: compact, TF-1.4-safe nets, one per file, registered in ``distill.core.registry.STUDENTS``."""
