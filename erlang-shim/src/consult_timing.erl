%% Where a consult stanza's time goes on this node, stage by stage, for
%% `ejabberdctl consult_status` and the benchmarks: counts and summed
%% durations in an atomic counters array, so that the hook (in the senders'
%% c2s processes) and the connection process add without a message or a lock.
%%   to_xml      the hook writes the client's element as XML
%%   request     the connection encodes the FilterRequest and frames and sends it
%%   round_trip  the hook waits: from its call to the verdict in hand (decoded)
%%   verdict     the connection reads a verdict's seq and hands it to its caller
%%   apply       the hook builds (or parses) and routes the verdict's stanza and extras
%% Before start/0 (EUnit, the test driver) adding is a no-op.
-module(consult_timing).

-export([start/0, stages/0, time/2, add/2, read/0, means/1]).
-export_type([stage/0, totals/0]).

-type stage() :: to_xml | request | round_trip | verdict | apply.
%% Per stage: how many, and their summed duration in native time units.
-type totals() :: #{stage() => {non_neg_integer(), non_neg_integer()}}.

-define(KEY, {?MODULE, counters}).

-spec stages() -> [stage()].
stages() -> [to_xml, request, round_trip, verdict, apply].

%% Once for the node: a second host's start keeps the counts (and a
%% persistent_term update would cost a global GC).
-spec start() -> ok.
start() ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> persistent_term:put(?KEY, counters:new(2 * length(stages()), [write_concurrency]));
        _ -> ok
    end.

%% Runs Fun, its duration added to Stage.
-spec time(stage(), fun(() -> T)) -> T.
time(Stage, Fun) ->
    T0 = erlang:monotonic_time(),
    Result = Fun(),
    add(Stage, erlang:monotonic_time() - T0),
    Result.

-spec add(stage(), integer()) -> ok.
add(Stage, Native) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        C ->
            I = index(Stage),
            counters:add(C, I, 1),
            counters:add(C, I + 1, Native)
    end.

-spec read() -> totals().
read() ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> #{};
        C -> maps:from_list([{S, {counters:get(C, index(S)), counters:get(C, index(S) + 1)}} || S <- stages()])
    end.

%% Mean µs per stage, stages never timed left out; pure.
-spec means(totals()) -> [{stage(), non_neg_integer(), float()}].
means(Totals) ->
    [{S, N, erlang:convert_time_unit(Sum, native, nanosecond) / N / 1000}
     || S <- stages(), {N, Sum} <- [maps:get(S, Totals, {0, 0})], N > 0].

index(to_xml) -> 1;
index(request) -> 3;
index(round_trip) -> 5;
index(verdict) -> 7;
index(apply) -> 9.
