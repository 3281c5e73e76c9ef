-- The 5-minute rollup's SELECT, shared by TimescaleDB's continuous aggregate (bucket =
-- time_bucket) and plain PostgreSQL's view (bucket = date_bin); the bucket expression
-- and the optional WHERE are filled in by edgeloop.features.rollup. Columns: avg_/min_/max_<statistic>.
SELECT {bucket} AS bucket,
       deployment,
       count(*) AS observation_count,
       count(sensor_mm) AS labelled_count,
       count(prediction_mm) AS predicted_count,
       avg(prediction_mm) AS avg_prediction_mm,
       min(prediction_mm) AS min_prediction_mm,
       max(prediction_mm) AS max_prediction_mm,
       avg(sensor_mm) AS avg_sensor_mm,
       min(sensor_mm) AS min_sensor_mm,
       max(sensor_mm) AS max_sensor_mm,
       avg(error_mm) AS avg_error_mm,
       min(error_mm) AS min_error_mm,
       max(error_mm) AS max_error_mm,
       avg(abs(error_mm)) AS avg_abs_error_mm,
       avg(latency_ms) AS avg_latency_ms,
       avg(mean_r) AS avg_mean_r,
       avg(mean_g) AS avg_mean_g,
       avg(mean_b) AS avg_mean_b,
       avg(hue) AS avg_hue,
       avg(saturation) AS avg_saturation,
       avg(brightness) AS avg_brightness,
       avg(contrast) AS avg_contrast,
       avg(sharpness) AS avg_sharpness,
       avg(edge_density) AS avg_edge_density,
       avg(keypoints::double precision) AS avg_keypoints,
       avg(entropy) AS avg_entropy
FROM features.observations{where}
GROUP BY bucket, deployment
