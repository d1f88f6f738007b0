"""Commands that measure and print tables; never assertions on time."""
