/** A JSON value as the protocol carries it: integers beyond 2^53 are BigInt. */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

/** Parses one JSON text; integers outside Number's safe range become BigInt. */
export function parse(text: string): Json;

/** JSON.stringify that writes BigInt values as integers. */
export function stringify(value: unknown): string;
