"""REDIS_URL forms: one server, TLS, Sentinel and Cluster (integrations/redis_url.py)."""
import pytest
from redis.sentinel import SentinelManagedConnection

from integrations.redis_url import async_client, parse_redis_url, sync_client


def test_single_server_urls_pass_through():
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@redis.example:6380/2", "unix:///run/redis.sock?db=1"):
        target = parse_redis_url(url)
        assert (target.kind, target.url) == ("single", url)
    assert parse_redis_url("rediss://h/0").tls is True and parse_redis_url("redis://h/0").tls is False


def test_sentinel_url_names_its_hosts_service_and_db():
    target = parse_redis_url("rediss+sentinel://app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:26381/mymaster/3"
                             "?sentinel_password=sp&ssl_ca_certs=/etc/ca.pem")
    assert target.kind == "sentinel" and target.tls is True
    assert target.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "app", "s@cret")
    assert target.options == {"sentinel_password": "sp", "ssl_ca_certs": "/etc/ca.pem"}


def test_cluster_url_names_its_seed_nodes():
    target = parse_redis_url("redis+cluster://:pw@node1:7000,node2:7001,node3")
    assert target.kind == "cluster" and target.tls is False and target.password == "pw"
    assert target.hosts == (("node1", 7000), ("node2", 7001), ("node3", 6379))


@pytest.mark.parametrize("url, message", [
    ("http://h", "must start with one of"),
    ("redis+sentinel://h:26379", "names its service"),
    ("redis+sentinel://h:26379/m/x", "bad db"),
    ("redis+cluster://h:7000/1", "only db 0"),
    ("redis+cluster://h:port", "bad port"),
    ("redis+cluster://:pw@", "no host"),
])
def test_bad_urls_fail_with_one_clear_line_without_the_password(url, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_redis_url(url)
    assert "pw" not in str(error.value)


def test_sentinel_client_asks_the_sentinels_for_the_master():
    client = sync_client("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/4")
    pool = client.connection_pool
    assert pool.connection_class is SentinelManagedConnection or issubclass(pool.connection_class,
                                                                            SentinelManagedConnection)
    assert pool.service_name == "mymaster" and pool.connection_kwargs["db"] == 4
    assert pool.connection_kwargs["password"] == "pw"
    assert [c.connection_pool.connection_kwargs["port"] for c in pool.sentinel_manager.sentinels] == [1, 2]


def test_async_clients_of_each_kind():
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection

    single = async_client("redis://:pw@127.0.0.1:6390/2", decode_responses=True)
    assert isinstance(single, Redis) and single.connection_pool.connection_kwargs["db"] == 2
    sentinel = async_client("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/4?sentinel_password=sp")
    pool = sentinel.connection_pool
    assert issubclass(pool.connection_class, AsyncSentinelConnection) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 4 and pool.connection_kwargs["password"] == "pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    cluster = async_client("rediss+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001", max_connections=8)
    assert isinstance(cluster, RedisCluster)
    nodes = cluster.nodes_manager.startup_nodes.values()
    assert [(n.host, n.port) for n in nodes] == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]
    kwargs = cluster.connection_kwargs
    assert kwargs["password"] == "pw" and kwargs["max_connections"] == 8
    assert kwargs["connection_class"].__name__ == "SSLConnection"


async def test_async_cluster_client_on_a_real_cluster(redis_cluster_url):
    client = async_client(redis_cluster_url, decode_responses=True)
    try:
        for i in range(20):  # keys on every master
            await client.set(f"pdtest:url:{i}", str(i))
        assert [await client.get(f"pdtest:url:{i}") for i in range(20)] == [str(i) for i in range(20)]
        assert len({client.keyslot(f"pdtest:url:{i}") // 5462 for i in range(20)}) == 3
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def sentinel_url(tmp_path_factory):
    """A real master and one Sentinel watching it (Debian's redis-server in sentinel mode), both
    on free loopback ports: the redis+sentinel:// URL of service ``pdmaster``."""
    import shutil
    import subprocess
    import time

    from scripts.stack import free_port

    server = shutil.which("redis-server", path="/usr/bin")
    if server is None:
        pytest.skip("Debian's redis-server is not installed: run make redis-cluster")
    base = tmp_path_factory.mktemp("sentinel")
    master_port, sentinel_port = free_port(), free_port()
    conf = base / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {base}\n"
                    f"sentinel monitor pdmaster 127.0.0.1 {master_port} 1\n")
    processes = [subprocess.Popen([server, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                                   "--dir", str(base)], stdout=subprocess.DEVNULL),
                 subprocess.Popen([server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = subprocess.run(["/usr/bin/redis-cli", "-p", str(sentinel_port), "sentinel",
                                   "get-master-addr-by-name", "pdmaster"], capture_output=True, text=True)
            if str(master_port) in done.stdout:
                break
            time.sleep(0.2)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/pdmaster/2"
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


async def test_clients_find_the_master_through_a_real_sentinel(sentinel_url):
    blocking = sync_client(sentinel_url, decode_responses=True)
    blocking.set("pdtest:sentinel", "同步")
    client = async_client(sentinel_url, decode_responses=True)
    try:
        assert await client.get("pdtest:sentinel") == "同步"
        await client.set("pdtest:sentinel", "异步")
        assert blocking.get("pdtest:sentinel") == "异步"
        master = blocking.connection_pool.get_master_address()
        assert tuple(await client.connection_pool.get_master_address()) == tuple(master)
        assert int((await client.info("keyspace"))["db2"]["keys"]) == 1  # the URL's db
    finally:
        await client.aclose()
        blocking.close()
