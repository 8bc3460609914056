from chathistory import hookimpl


@hookimpl
def chathistory_backend():  # type: ignore[no-untyped-def]
    from chathistory_example.backend import JsonLinesBackend

    return JsonLinesBackend
