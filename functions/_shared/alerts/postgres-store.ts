// functions/_shared/alerts/postgres-store.ts — AlertStore on Postgres: anomaly.claim_alerts, anomaly.ack_alert and
// anomaly.channel_secret. Claimed rows are validated with zod before anything is sent.
import type { Sql } from "../db.ts";
import type { AckRecord, AlertStore } from "./dispatcher.ts";
import { AlertClaim } from "./types.ts";

export function postgresAlertStore(sql: Sql): AlertStore {
  return {
    async claim(dispatcher: string, limit?: number) {
      const rows = await sql`select * from anomaly.claim_alerts(${dispatcher}, ${limit ?? null}::integer)`;
      return rows.map((row) => AlertClaim.parse(row));
    },
    async ack(r: AckRecord, dispatcher: string) {
      const [row] = await sql<{ result: string }[]>`
        select anomaly.ack_alert(${r.claimId}::uuid, ${r.outcome}, ${r.statusCode ?? null}::integer,
                                 ${r.error ?? null}, ${r.durationMs}::integer, ${
        r.retryInMs ?? null
      }::integer,
                                 ${r.partsSent}::integer, ${dispatcher}) as result`;
      return row.result;
    },
    async secret(channelId: string) {
      const [row] = await sql<
        { secret: string }[]
      >`select anomaly.channel_secret(${channelId}::uuid) as secret`;
      return row.secret;
    },
  };
}
