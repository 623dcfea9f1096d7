"""careflow's database: flows read model, message store, escalations, audit log."""
