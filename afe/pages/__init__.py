"""Server-rendered AFE pages: jobs, hosts, job creation and results, behind the admin's login.

One module per topic (``jobs``, ``create``, ``hosts``, ``results``), the
forms in ``forms`` and the shared helpers in ``common``. Every action is a
POST with CSRF, uses the models' operations and ``afe.permissions``' rules,
and reports a refusal as a message on the page. List and detail pages serve
their live parts as fragments (``?partial=...``) that ``static/afe/poll.js``
refreshes every few seconds.
"""
