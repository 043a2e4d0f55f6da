"""The application: the server that wires everything, the command line, console and demo bots."""
