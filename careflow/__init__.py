"""careflow: durable care pathways over Danish health messaging."""
