"""Helpers of the test suite: settings, servers, peers, clients. No tests here."""
