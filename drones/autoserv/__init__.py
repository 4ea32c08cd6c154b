"""autoserv: the job runner the scheduler runs for every job and special task.

``python -m drones.autoserv`` (or ``bin/autoserv``) takes Autotest autoserv's
command line (spec §5.1), runs a server or client control file on the job's
hosts or one host action (verify, cleanup, reset, repair, provision, crash-info
collection), and leaves in the results directory ``status.log``, ``keyval``,
``debug/autoserv.DEBUG`` and, with ``-p``, the pidfile (§5.2).

Modules, one idea each:

- ``cli``: the command line → ``Options``;
- ``main``: one run from start to pidfile;
- ``abort``: SIGTERM → ``Aborted``, raised in the main thread and at every poll;
- ``status_log``: writing (and parsing) ``status.log``;
- ``keyval``, ``pidfile``, ``logs``: the other result files;
- ``config``: the ``AUTOSERV_*`` Django settings;
- ``hostinfo``: what the AFE database says about a host;
- ``process``, ``ssh``: running a command on the drone or over SSH;
- ``hosts``: host objects (``run``, ``reboot``, ``wait_up``) and their factory;
- ``job``: the ``job`` object of server control files;
- ``control``: running server and client control files;
- ``actions``: verify, cleanup, reset, repair, provision;
- ``crashinfo``: ``--collect-crashinfo``.
"""
