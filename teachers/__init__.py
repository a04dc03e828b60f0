"""Teacher architectures: large, unconstrained nets, one per file, registered in ``distill.registry.TEACHERS``."""
