from messaging.correlation import acceptable, correlation_scope, new_correlation_id

REQUEST_ID_HEADER = "X-Request-ID"


class CorrelationIdMiddleware:
    """Give every request a correlation id (the client's X-Request-ID, or a new one).

    Events published while handling the request carry it, and the response returns it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get(REQUEST_ID_HEADER)
        request_id = supplied if acceptable(supplied) else new_correlation_id()
        request.correlation_id = request_id
        with correlation_scope(request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
