"""The event log: publish, commit, deliver; and the subscriptions that read it."""
