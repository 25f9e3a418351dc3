"""Training: mesh and shardings, the train state, the jitted step, metric writers, the loop."""
