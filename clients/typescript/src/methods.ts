// methods.ts -- the method table, built from the service descriptors of the
// committed stubs (gen/typescript/), so that a method name here can never
// drift from proto/shop/v1.

import type { DescMessage, DescMethod } from "@bufbuild/protobuf";

import {
  AuthService, SignInRequestSchema, SignInResponseSchema, SignUpRequestSchema, SignUpResponseSchema,
} from "#shop/v1/auth_pb.js";
import {
  AddOrderItemRequestSchema, CreateOrderRequestSchema, GetOrderRequestSchema, OrderSchema, OrderService,
} from "#shop/v1/order_pb.js";
import {
  CreateProductRequestSchema, GetProductsRequestSchema, GetProductsResponseSchema, ListProductsRequestSchema,
  ListProductsResponseSchema, ProductSchema, ProductService,
} from "#shop/v1/product_pb.js";

/** One RPC: its wire name ("/shop.v1.ProductService/ListProducts"), the
 * service to discover ("product"), its request and response schemas, and
 * whether sending it twice is harmless (then a transport failure is retried
 * once on another instance, as the contract's retry rule says). */
export interface Method<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  readonly path: string;
  readonly service: string;
  readonly input: I;
  readonly output: O;
  readonly idempotent: boolean;
}

function method<I extends DescMessage, O extends DescMessage>(
  desc: DescMethod & { input: I; output: O }, service: string, idempotent: boolean): Method<I, O> {
  return Object.freeze({
    path: `/${desc.parent.typeName}/${desc.name}`, service, input: desc.input, output: desc.output, idempotent,
  });
}

export const SIGN_UP: Method<typeof SignUpRequestSchema, typeof SignUpResponseSchema> = method(AuthService.method.signUp, "auth", false);
// Not idempotent: a failed sign-in counts against the name's throttle.
export const SIGN_IN: Method<typeof SignInRequestSchema, typeof SignInResponseSchema> = method(AuthService.method.signIn, "auth", false);
export const CREATE_PRODUCT: Method<typeof CreateProductRequestSchema, typeof ProductSchema> =
  method(ProductService.method.createProduct, "product", false);
export const LIST_PRODUCTS: Method<typeof ListProductsRequestSchema, typeof ListProductsResponseSchema> =
  method(ProductService.method.listProducts, "product", true);
export const GET_PRODUCTS: Method<typeof GetProductsRequestSchema, typeof GetProductsResponseSchema> =
  method(ProductService.method.getProducts, "product", true);
export const CREATE_ORDER: Method<typeof CreateOrderRequestSchema, typeof OrderSchema> =
  method(OrderService.method.createOrder, "order", false);
export const ADD_ORDER_ITEM: Method<typeof AddOrderItemRequestSchema, typeof OrderSchema> =
  method(OrderService.method.addOrderItem, "order", false);
export const GET_ORDER: Method<typeof GetOrderRequestSchema, typeof OrderSchema> =
  method(OrderService.method.getOrder, "order", true);

/** Every method by its wire name. */
export const METHODS: ReadonlyMap<string, Method> = new Map<string, Method>(
  [SIGN_UP, SIGN_IN, CREATE_PRODUCT, LIST_PRODUCTS, GET_PRODUCTS, CREATE_ORDER, ADD_ORDER_ITEM, GET_ORDER]
    .map((m) => [m.path, m as Method]));
