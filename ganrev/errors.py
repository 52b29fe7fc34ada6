"""The one exception type users of ganrev need to catch."""


class GanrevError(Exception):
    """A problem with the user's input (file, image, checkpoint, option) explained in plain words.

    The CLI prints these without a traceback; anything else escaping is a bug in ganrev.
    """
