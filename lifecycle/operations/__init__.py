"""mlc's operations above rollout: status (drift), sync, retention (gc, pin), processes (serve, stop), k8s."""
