"""Teacher architectures: large, unconstrained nets, one per file, registered in ``distill.core.registry.TEACHERS``."""
