"""The dashboard's route modules: each has `setup(app, ctx)` (see skate.dashboard.server)."""
