"""OpenDREC on one machine: embedded Postgres and Tansu, SMTP sink, Kazam simulator,
the `python -m opendrec_devstack run` supervisor and the pytest plugin. See README.md."""
