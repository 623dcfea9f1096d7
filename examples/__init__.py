"""Examples that the tests run: a referral body for the README, the tutorial's pathways."""
