-- Incidents still open (PENDING, ASSIGNED, ON_SCENE), most urgent first, with their age in
-- seconds as of the end of the log (the latest event in the database).
SELECT
    id,
    region,
    type,
    priority,
    status,
    assigned_unit_id,
    reported_at,
    round(epoch((SELECT max(occurred_at) FROM events) - reported_at), 1) AS age_s
FROM emergencies
WHERE status IN ('PENDING', 'ASSIGNED', 'ON_SCENE')
ORDER BY priority, reported_at, id;
