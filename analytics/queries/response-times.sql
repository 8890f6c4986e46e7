-- Response times per incident stage, as percentiles (seconds), by type, region and hour of
-- day (UTC) the incident was reported.
--   assign:   reported -> a unit assigned
--   travel:   assigned -> unit on scene
--   on_scene: on scene -> completed
--   total:    reported -> completed
-- A stage that has not happened yet (or was cancelled) is left out of its percentiles;
-- quantile_cont interpolates, so p90 of 60 s and 180 s is 168 s.
WITH stages AS (
    SELECT
        type,
        region,
        hour(reported_at) AS hour,
        epoch(assigned_at - reported_at) AS assign_s,
        epoch(on_scene_at - assigned_at) AS travel_s,
        CASE WHEN status = 'COMPLETED' THEN epoch(closed_at - on_scene_at) END AS on_scene_s,
        CASE WHEN status = 'COMPLETED' THEN epoch(closed_at - reported_at) END AS total_s
    FROM emergencies
)
SELECT
    type,
    region,
    hour,
    count(*) AS incidents,
    count(total_s) AS completed,
    round(quantile_cont(assign_s, 0.5), 1) AS assign_p50_s,
    round(quantile_cont(assign_s, 0.9), 1) AS assign_p90_s,
    round(quantile_cont(travel_s, 0.5), 1) AS travel_p50_s,
    round(quantile_cont(travel_s, 0.9), 1) AS travel_p90_s,
    round(quantile_cont(on_scene_s, 0.5), 1) AS on_scene_p50_s,
    round(quantile_cont(on_scene_s, 0.9), 1) AS on_scene_p90_s,
    round(quantile_cont(total_s, 0.5), 1) AS total_p50_s,
    round(quantile_cont(total_s, 0.9), 1) AS total_p90_s
FROM stages
GROUP BY type, region, hour
ORDER BY type, region, hour;
