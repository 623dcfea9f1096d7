"""careflow's HTTP API: referrals, flows, inbound messages, coordinator console, codec endpoint."""
