"""Shop accounts: users and passwords, JWT refresh families and the access-token denylist."""
