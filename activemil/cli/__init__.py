"""The ``activemil`` command line (typer). Entry point: :func:`activemil.cli.app.main`."""
