"""Identity's use cases (the service layer), one module per area.

Each use case is an `async def` taking the unit of work (`uow`), the process's `Identity` collaborators
where it needs them (settings, password hasher, token signer, mail worker) and plain arguments; it runs
its reads and writes in `async with uow:` through `store`, applies the rules of `domain` and records
its events with `uow.record(...)`. Adapters (api/, the mail worker, the startup hook) call one each.

- accounts: registration with an organization, login (throttled), logout, profile, e-mail confirmation,
  password reset and change
- organizations: organizations, members, the admin's listings
- invitations: invite, list, answer, register with an invitation
- api_users: API users' registration, client-credentials tokens, key rotation, module permissions
- grants: ACL modules and role/user grants
- mail: send one batch of queued mails
- bootstrap: the first admin
- common: what several share (collaborators, answers, ending sessions, registering an organization)
"""
