"""Security tests: payloads never become code, fuzzed inputs, hidden secrets, webhook guards."""
