"""Ray Serve deployments and the application builder."""
