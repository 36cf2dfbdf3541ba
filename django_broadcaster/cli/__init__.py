"""The work behind ``manage.py broadcast``, apart from its command line.

The command itself (its arguments, running each subcommand in a fresh event
loop, turning mistakes into one-line errors) is
``django_broadcaster/management/commands/broadcast.py``; here are

- `arguments`: command-line text into API arguments (``MESSAGE``, ``--since``);
- `tail`: following channels, resuming when the output falls behind;
- `status`: probing each alias for reachability and round-trip time;
- `output`: JSON and terminal formatting of events and the status table.
"""
