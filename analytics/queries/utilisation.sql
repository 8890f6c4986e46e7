-- Unit utilisation: the share of observed time each unit was busy (DISPATCHED, ON_SCENE or
-- RETURNING: the drive back to the station is part of the job, as in unit-hour utilisation).
-- A unit is observed from its first event to the end of the log (the latest event in the
-- database); each status lasts until the unit's next status-carrying event.
WITH log_end AS (
    SELECT max(occurred_at) AS t FROM events
),
spans AS (
    SELECT
        unit_id,
        unit_status,
        epoch(
            coalesce(
                lead(occurred_at) OVER (PARTITION BY unit_id ORDER BY occurred_at, "partition", "offset"),
                (SELECT t FROM log_end)
            ) - occurred_at
        ) AS seconds
    FROM events
    WHERE unit_id IS NOT NULL AND unit_status IS NOT NULL
),
per_unit AS (
    SELECT
        unit_id,
        sum(seconds) AS observed_s,
        sum(CASE WHEN unit_status IN ('DISPATCHED', 'ON_SCENE', 'RETURNING') THEN seconds ELSE 0 END) AS busy_s
    FROM spans
    GROUP BY unit_id
),
dispatches AS (
    SELECT unit_id, count(*) AS dispatches
    FROM events
    WHERE event = 'emergency_updated' AND action = 'assigned'
    GROUP BY unit_id
)
SELECT
    u.id AS unit_id,
    u.callsign,
    u.type,
    u.region,
    u.status AS current_status,
    coalesce(d.dispatches, 0) AS dispatches,
    round(coalesce(p.busy_s, 0), 1) AS busy_s,
    round(coalesce(p.observed_s, 0), 1) AS observed_s,
    round(coalesce(p.busy_s / nullif(p.observed_s, 0), 0), 4) AS utilisation
FROM units u
LEFT JOIN per_unit p ON p.unit_id = u.id
LEFT JOIN dispatches d ON d.unit_id = u.id
ORDER BY utilisation DESC, u.id;
