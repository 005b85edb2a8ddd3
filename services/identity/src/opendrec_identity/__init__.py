"""OpenDREC identity: users, organizations, roles, ACL permissions and signed access tokens."""
