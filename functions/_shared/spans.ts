// functions/_shared/spans.ts — the staged-span row: the one shape every ingest path (OTLP push,
// Tempo pull, replay) hands to the database function anomaly.ingest_spans(json).
//
// Field names are the column names of anomaly.spans. Times are ISO-8601 UTC strings with
// microsecond precision (Postgres timestamptz resolution); durations are integer nanoseconds.

import { z } from "zod";

export const HEX_TRACE_ID = /^[0-9a-f]{32}$/;
export const HEX_SPAN_ID = /^[0-9a-f]{16}$/;

/** Attribute maps after flattening OTLP AnyValue: scalars stay scalars, arrays/kvlists become JSON. */
export type AttributeValue =
  | string
  | number
  | boolean
  | null
  | AttributeValue[]
  | { [key: string]: AttributeValue };
export type Attributes = Record<string, AttributeValue>;

export const StagedSpanSchema = z.object({
  trace_id: z.string().regex(HEX_TRACE_ID),
  span_id: z.string().regex(HEX_SPAN_ID),
  parent_span_id: z.string().regex(HEX_SPAN_ID).nullable(),
  start_time: z.string(), // ISO-8601, microseconds, "Z"
  end_time: z.string(),
  duration_ns: z.number().int().nonnegative(),
  service_name: z.string().min(1).max(256),
  service_version: z.string().max(256).nullable(),
  service_instance: z.string().max(256).nullable(),
  name: z.string().min(1).max(1024),
  kind: z.number().int().min(0).max(5),
  status_code: z.number().int().min(0).max(2),
  status_message: z.string().max(4096).nullable(),
  http_status_code: z.number().int().min(100).max(599).nullable(),
  http_route: z.string().max(1024).nullable(),
  http_method: z.string().max(32).nullable(),
  scope_name: z.string().max(256).nullable(),
  resource_attributes: z.record(z.string(), z.unknown()),
  attributes: z.record(z.string(), z.unknown()),
  events: z.array(z.unknown()),
});

export type StagedSpan = z.infer<typeof StagedSpanSchema>;
