"""The control side of ddcicd: state machine definition, CLI, local engine, AWS client side.

`steps/`, `lambdas/` and `data/` never import this package; it imports them only to run
them locally.
"""
