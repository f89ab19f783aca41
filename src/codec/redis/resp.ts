/**
 * RESP, the Redis serialization protocol: the redis codec's framing of requests and responses.
 *
 * Requests (client -> poolside):
 *   multibulk  *<n>\r\n  then n x  $<len>\r\n<len bytes>\r\n     (`*0` and negative counts are ignored)
 *   inline     words separated by blanks, ending in \r\n or \n; "double" and 'single' quotes as in
 *              Redis's sdssplitargs. Re-encoded as a multibulk before it is handed on.
 *
 * Responses (server -> poolside), RESP2 and RESP3:
 *   lines      +simple  -error  :integer  _null  ,double  #t/#f  (big number       then \r\n
 *   bulk       $<len>\r\n<bytes>\r\n   !<len> blob error   =<len> verbatim   ($-1 is RESP2 null)
 *   aggregate  *<n> array   ~<n> set   ><n> push   %<n> map (2n values)       (*-1 is RESP2 null)
 *   attribute  |<n> then 2n values, then the value it annotates: together one response
 *   streamed   $?\r\n then ;<len>\r\n<bytes>\r\n chunks, ending ;0\r\n
 *              *? %? ~? then values, ending .\r\n
 *
 * Lengths are decimal without a sign or leading zeros (Redis's string2ll), apart from -1 where noted.
 */
export {
  RespRequestDecoder,
  commandName,
  encodeCommand,
  type RespRequestDecoderOptions,
} from './resp-request.js';
export { RespResponseDecoder, encodeError, type RespResponseDecoderOptions } from './resp-response.js';
