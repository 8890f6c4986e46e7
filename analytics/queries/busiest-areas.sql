-- Busiest areas: incidents per grid cell of 0.01 degrees (about 1.1 km north-south and
-- 0.55 km east-west at Helsinki's latitude), by region, busiest first. cell_lat/cell_lon
-- is the cell's south-west corner.
SELECT
    region,
    round(floor(lat * 100) / 100, 2) AS cell_lat,
    round(floor(lon * 100) / 100, 2) AS cell_lon,
    count(*) AS incidents,
    count(*) FILTER (WHERE status IN ('PENDING', 'ASSIGNED', 'ON_SCENE')) AS open_incidents,
    string_agg(DISTINCT type, ',' ORDER BY type) AS types
FROM emergencies
GROUP BY ALL
ORDER BY incidents DESC, region, cell_lat, cell_lon;
