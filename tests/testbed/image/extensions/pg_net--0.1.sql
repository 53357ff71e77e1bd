-- Testbed stub of pg_net (see pg_net.control): the objects webhooks.sql names. Like the real
-- script, it puts them in schema net whatever schema CREATE EXTENSION names.
CREATE SCHEMA IF NOT EXISTS net;

CREATE TABLE net.http_request_queue (
    id bigserial PRIMARY KEY,
    method text NOT NULL,
    url text NOT NULL,
    headers jsonb NOT NULL,
    body jsonb,
    timeout_milliseconds integer NOT NULL
);

CREATE TYPE net.http_response AS (status_code integer, headers jsonb, body text);
CREATE TYPE net.http_response_result AS (status text, message text, response net.http_response);

CREATE FUNCTION net.http_get(
    url text, params jsonb DEFAULT '{}'::jsonb, headers jsonb DEFAULT '{}'::jsonb,
    timeout_milliseconds integer DEFAULT 2000
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.http_request_queue (method, url, headers, body, timeout_milliseconds)
    VALUES ('GET', url, headers, NULL, timeout_milliseconds) RETURNING id
$$;

CREATE FUNCTION net.http_post(
    url text, body jsonb DEFAULT '{}'::jsonb, params jsonb DEFAULT '{}'::jsonb,
    headers jsonb DEFAULT '{"Content-Type": "application/json"}'::jsonb,
    timeout_milliseconds integer DEFAULT 2000
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.http_request_queue (method, url, headers, body, timeout_milliseconds)
    VALUES ('POST', url, headers, body, timeout_milliseconds) RETURNING id
$$;

-- Nothing is ever sent, so nothing is ever collected: "PENDING", like a request in flight.
CREATE FUNCTION net._http_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS net.http_response_result LANGUAGE sql AS $$
    SELECT ROW('PENDING', 'request not sent (testbed stub)', NULL)::net.http_response_result
$$;
