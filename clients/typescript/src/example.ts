// example.ts -- the README's example, compiled with the client so that it
// stays runnable: `node clients/typescript/dist/src/example.js` against a
// stack started by `./shop up` (SHOP_REGISTRY_LOOKUP_URL, default
// tcp://127.0.0.1:7101).

import { NotFound, ShopClient, TransportError, methods, toDict } from "./index.js";
import { OrderSchema } from "#shop/v1/order_pb.js";

const shop = new ShopClient(process.env.SHOP_REGISTRY_LOOKUP_URL ?? "tcp://127.0.0.1:7101", { timeoutMs: 5000 });
try {
  const me = await shop.signUp(`kim-${Date.now()}`, "correct horse");   // or shop.signIn(...)
  console.log(me.userId, me.accessToken);                               // the same JWT the gateway accepts

  const kb = await shop.createProduct("Keyboard", 30000);               // a shop.v1.Product (ids are bigint)
  for await (const p of shop.iterProducts(500)) console.log(p.id, p.name, p.supplyPrice);

  // Orders act for a user: the services trust the envelope's caller_user_id.
  let order = await shop.createOrder([kb.id, kb.id], { userId: me.userId });
  order = await shop.addOrderItem(order.id, kb.id, { userId: me.userId });
  const r = await shop.call(methods.GET_ORDER, { orderId: order.id }, { userId: me.userId });
  console.log(r.message.totalSupplyPrice, r.metadata.cache, r.instance);  // 90000n HIT order
  console.log(JSON.stringify(toDict(OrderSchema, r.message)));            // the gateway's JSON shape

  // A deadline of the caller's own: AbortSignal.timeout() gives a ShopTimeout, abort() an Aborted.
  await shop.listProducts(10, "", { signal: AbortSignal.timeout(200) });

  await shop.createOrder([123456789n], { userId: me.userId });
} catch (e) {
  if (e instanceof NotFound) console.log(e.reason, e.metadata);   // PRODUCT_NOT_FOUND { product_id: '123456789' }
  else if (e instanceof TransportError) console.log("no answer:", e.message, e.sent ? "(may have been sent)" : "(not sent)");
  else throw e;
} finally {
  shop.close();
}
