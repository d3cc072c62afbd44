/* probe.h -- what the integration tests that run a real registry share: a
 * free loopback port, and one Lookup over a fresh REQ socket. Static
 * inline functions: each test program includes it once. */
#ifndef SHOP_TEST_PROBE_H
#define SHOP_TEST_PROBE_H

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "clock.h"
#include "registry.pb-c.h"

/* A TCP port on 127.0.0.1 that was free a moment ago; 0 on failure. */
static inline uint16_t probe_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* One Lookup{service="product", wait_revision, wait_ms} to url over a fresh
 * REQ socket, answered within timeout_ms. Returns -1 when the registry did
 * not answer, else the number of instances named name (0 for name NULL);
 * *revision and *ms (time to answer) when not NULL. */
static inline int probe_lookup(const char *url, const char *name, uint64_t wait_revision,
			       uint32_t wait_ms, int timeout_ms, uint64_t *revision, int64_t *ms)
{
	Shop__V1__Lookup req = SHOP__V1__LOOKUP__INIT;
	Shop__V1__Instances *in;
	nng_socket s;
	nng_msg *msg = NULL;
	int64_t t0;
	int found = -1;

	if (nng_req0_open(&s) != 0)
		return -1;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 500);
	req.service = "product";
	req.wait_revision = wait_revision;
	req.wait_ms = wait_ms;
	if (nng_dial(s, url, NULL, 0) != 0 ||
	    nng_msg_alloc(&msg, shop__v1__lookup__get_packed_size(&req)) != 0)
		goto out_sock;
	shop__v1__lookup__pack(&req, nng_msg_body(msg));
	t0 = shop_now_mono_us();
	if (nng_sendmsg(s, msg, 0) != 0) {
		nng_msg_free(msg);
		goto out_sock;
	}
	if (nng_recvmsg(s, &msg, 0) != 0)
		goto out_sock;
	if (ms != NULL)
		*ms = (shop_now_mono_us() - t0) / 1000;
	in = shop__v1__instances__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	if (in == NULL)
		goto out_sock;
	found = 0;
	for (size_t i = 0; name != NULL && i < in->n_instances; i++)
		if (strcmp(in->instances[i]->instance, name) == 0)
			found++;
	if (revision != NULL)
		*revision = in->revision;
	shop__v1__instances__free_unpacked(in, NULL);
out_sock:
	nng_close(s);
	return found;
}

#endif
