"""UI blueprints, one per area of the operator and admin interface."""
