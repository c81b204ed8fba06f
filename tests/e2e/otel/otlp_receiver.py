"""A minimal OTLP/gRPC trace receiver for the end-to-end tests.

Listens on 127.0.0.1:<port> (argv[1]; 0 picks a free port, printed as the first
line of stdout) and appends every span it receives to the JSON-lines file
argv[2]: {"name", "kind", "trace_id", "span_id", "parent_span_id", "status",
"attributes": {key: value}}. Started by tests/e2e/tests/observability.rs with
the project venv's Python (grpcio and opentelemetry-proto from PyPI).
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def attribute_value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [attribute_value(v) for v in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: attribute_value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "status": span.status.code,
                        "service": resource.get("service.name"),
                        "attributes": {a.key: attribute_value(a.value) for a in span.attributes},
                    }))
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(path), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(bound, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
